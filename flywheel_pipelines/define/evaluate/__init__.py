"""Define, step 4: guide metrics — generate with each model, execute or parse what it wrote, score it."""
