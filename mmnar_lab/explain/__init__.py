"""Validation experiments of the explanations, and the explanation benchmark."""
