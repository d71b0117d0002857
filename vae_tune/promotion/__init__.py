"""Promotion: the champion chosen on validation, retrained, tested once, registered."""
