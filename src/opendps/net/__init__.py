"""URLs that users name: one parser for file-input values, and one safety policy for
everything the server fetches or calls on a user's behalf (DESIGN §11)."""
