"""Patchers turn a round's evidence into one candidate commit (or say why they have none)."""
