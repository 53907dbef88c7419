"""Server-side login sessions, CSRF tokens and login throttling."""
