"""Define, step 3: distil instruction examples — reverse generation and a teacher model."""
