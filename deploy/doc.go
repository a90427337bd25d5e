// Package deploy holds no code: its folders are what an installation ships
// besides the binaries (systemd units and the sysusers entry, the Prometheus
// alert rules, the Grafana dashboard), and its tests check them with the
// real tools: systemd-analyze verify, promtool test rules, and a Prometheus
// scraping a running directord for every dashboard query.
package deploy
