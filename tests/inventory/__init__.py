"""Tests of ``bulkkm.inventory``."""
