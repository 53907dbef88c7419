"""The local lab: Debian 13 hosts in systemd-nspawn on two private bridges, for deploying and testing."""
