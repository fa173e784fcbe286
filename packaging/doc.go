// Package packaging holds what ships selfprotect to servers and fleets: the
// Debian package sources (debian/, build-deb.sh, install.sh), the hardened
// systemd unit, the Prometheus alerting rules and the Grafana dashboard. Its
// tests check the fleet files against a real scrape of the daemon running
// on the simulator; deb-check.sh checks the built package.
package packaging
