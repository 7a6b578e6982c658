//! End-to-end test support for wxtoken.
