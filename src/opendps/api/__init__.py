"""HTTP surfaces: one FastAPI app, three dialects over the service layer (DESIGN §6)."""
