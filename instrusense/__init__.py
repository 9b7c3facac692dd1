"""InstruSense: which instruments play in a recording, and when."""
