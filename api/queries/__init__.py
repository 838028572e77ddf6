"""All SQL of the API, one module per area; functions take a Store and return rows."""
