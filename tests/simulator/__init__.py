"""Tests of the simulated ONTAP fleet."""
