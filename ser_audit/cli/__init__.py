"""Command-line interface: parse, call ser_audit.api, render. Nothing else."""
