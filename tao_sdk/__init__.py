"""TAO Skill Bank SDK."""
