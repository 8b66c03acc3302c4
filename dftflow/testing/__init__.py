"""Test utilities shipped with dftflow (pytest fixtures: mock VASP, embedded LaunchPad)."""
