"""Pure routing decisions: header parsing, the routing table, broadcast recipients. No I/O."""
