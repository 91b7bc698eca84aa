"""The tables: the default synthetic data, the Telco loader, and reading and validating a user's table."""
