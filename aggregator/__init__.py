"""Figures: indicators with small-cell suppression, computed in one place for every reader."""
