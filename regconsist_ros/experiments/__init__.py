"""One module per committed results table (see docs/results/)."""
