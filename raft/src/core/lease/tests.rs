//! Scenario tests of `lease.rs`: leader leases for reads (thesis §6.4.1).
