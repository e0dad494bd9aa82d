"""`edgeq export --target all` (or a comma list): every target from one intake, one matrix report."""
