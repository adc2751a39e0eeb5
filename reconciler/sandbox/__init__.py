"""A faithful local fake of the federation-user and CloudIdentity APIs."""
