"""Tests of the emulator (a package so its module names do not clash with tests/providers)."""
