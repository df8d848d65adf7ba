"""bulkkm."""
