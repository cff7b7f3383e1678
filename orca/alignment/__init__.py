"""Stage 2's alignment losses (OTDD and the alternatives the paper compares) and the
pseudo-labels that let non-classification tasks use label-aware distances."""
