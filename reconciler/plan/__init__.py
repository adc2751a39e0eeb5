"""Planning: the pure diff of desired against recorded state, and the plan as a value."""
