"""Stage 2's source side: labelled proxy datasets of the body's own modality, as features."""
