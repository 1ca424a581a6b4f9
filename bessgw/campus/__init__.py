"""Campus dispatch through etcd (filled in below)."""
