"""Subcommands that live in their own modules (wiring only; mounted by dissect.cli)."""
