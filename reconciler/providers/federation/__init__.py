"""The federation-user API: settings, client, and what its answers mean."""
