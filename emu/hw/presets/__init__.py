"""Machine presets: one TOML file per preset, loaded by name through emu.config."""
