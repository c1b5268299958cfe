"""ShapeGrasp-style geometric part grounding (the default, weight-free backend)."""
