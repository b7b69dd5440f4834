"""HTTP at the byte level: the server protocol the hub runs under, and the one outbound client."""
