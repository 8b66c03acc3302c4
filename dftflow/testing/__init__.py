"""Test utilities shipped with dftflow (pytest fixtures for mock VASP and the embedded LaunchPad)."""
