"""The site-shift experiment (`python -m mmnar_core shift-study`): when does missingness-aware modelling pay."""
