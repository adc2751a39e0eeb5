"""The desired state: safe YAML loading, validation, and the frozen values the planner reads."""
