"""The `edgeresnet` commands, one module per command or group of related commands; cli.py gathers them."""
