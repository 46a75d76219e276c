"""People: panel users and their roles, logins and sessions, and the audit trail of what they did."""
