package config

// The raw structs mirror the YAML file one to one: the first loading stage
// (decode.go) fills them strictly from the yaml.Node tree, and validation
// (validate*.go) turns them into the typed Config. Scalars are pointers so that
// "absent" (nil: take the default) differs from an explicit zero value.
// Durations, addresses and enums stay strings here: parsing them is validation,
// which reports every problem with its line instead of stopping at the first.
//
// The yaml tags are the only source of key names: the decoder builds its
// "valid keys" hints from them, in field order.

type rawConfig struct {
	Director *rawDirector  `yaml:"director"`
	API      *rawAPI       `yaml:"api"`
	Metrics  *rawMetrics   `yaml:"metrics"`
	Log      *rawLog       `yaml:"log"`
	BGP      *rawBGP       `yaml:"bgp"`
	Kernel   *rawKernel    `yaml:"kernel"`
	IPVS     *rawIPVS      `yaml:"ipvs"`
	Services []*rawService `yaml:"services"`
	Notify   *rawNotify    `yaml:"notify"`
}

type rawDirector struct {
	Name             *string `yaml:"name"`
	VIPInterface     *string `yaml:"vip_interface"`
	Announce         *string `yaml:"announce"`
	HoldDown         *string `yaml:"hold_down"`
	DrainDelay       *string `yaml:"drain_delay"`
	ResyncInterval   *string `yaml:"resync_interval"`
	MaxFailedResyncs *int64  `yaml:"max_failed_resyncs"`
	GracefulShutdown *string `yaml:"graceful_shutdown"`
	Linger           *string `yaml:"linger"`
	StateDir         *string `yaml:"state_dir"`
	VIPBinding       *string `yaml:"vip_binding"`
}

type rawAPI struct {
	Socket      *string    `yaml:"socket"`
	KeepConfigs *int64     `yaml:"keep_configs"`
	TCP         *rawTCPAPI `yaml:"tcp"`
}

type rawTCPAPI struct {
	Listen   *string `yaml:"listen"`
	Cert     *string `yaml:"cert"`
	Key      *string `yaml:"key"`
	ClientCA *string `yaml:"client_ca"`
}

type rawMetrics struct {
	Listen *string `yaml:"listen"`
}

type rawLog struct {
	Format *string `yaml:"format"`
	Level  *string `yaml:"level"`
}

type rawBGP struct {
	ASN             *int64     `yaml:"asn"`
	RouterID        *string    `yaml:"router_id"`
	ListenPort      *int64     `yaml:"listen_port"`
	ListenAddresses []*string  `yaml:"listen_addresses"`
	Peers           []*rawPeer `yaml:"peers"`
	GracefulRestart *rawGR     `yaml:"graceful_restart"`
}

type rawGR struct {
	RestartTime *string `yaml:"restart_time"`
}

type rawPeer struct {
	Address            *string   `yaml:"address"`
	ASN                *int64    `yaml:"asn"`
	Port               *int64    `yaml:"port"`
	LocalAddress       *string   `yaml:"local_address"`
	HoldTime           *string   `yaml:"hold_time"`
	Keepalive          *string   `yaml:"keepalive"`
	ConnectRetry       *string   `yaml:"connect_retry"`
	IdleHoldAfterReset *string   `yaml:"idle_hold_after_reset"`
	Passive            *bool     `yaml:"passive"`
	MultihopTTL        *int64    `yaml:"multihop_ttl"`
	Password           *string   `yaml:"password"`
	PasswordFile       *string   `yaml:"password_file"`
	PasswordEnv        *string   `yaml:"password_env"`
	TTLSecurity        *int64    `yaml:"ttl_security"`
	BFD                *rawBFD   `yaml:"bfd"`
	Families           []*string `yaml:"families"`
}

type rawBFD struct {
	MinInterval *string `yaml:"min_interval"`
	Multiplier  *int64  `yaml:"multiplier"`
}

type rawKernel struct {
	Table    *int64 `yaml:"table"`
	Protocol *int64 `yaml:"protocol"`
}

type rawIPVS struct {
	ManageSysctls *bool            `yaml:"manage_sysctls"`
	Sysctls       map[string]int64 `yaml:"sysctls"`
	Sync          *rawSync         `yaml:"sync"`
}

type rawSync struct {
	Interface  *string `yaml:"interface"`
	SyncID     *int64  `yaml:"sync_id"`
	Group      *string `yaml:"group"`
	Port       *int64  `yaml:"port"`
	TTL        *int64  `yaml:"ttl"`
	MaxMessage *int64  `yaml:"max_message"`
}

type rawService struct {
	Name           *string       `yaml:"name"`
	VIP            *string       `yaml:"vip"`
	Port           *int64        `yaml:"port"`
	Protocol       *string       `yaml:"protocol"`
	Scheduler      *string       `yaml:"scheduler"`
	SchedulerFlags []*string     `yaml:"scheduler_flags"`
	Persistence    *string       `yaml:"persistence"`
	Forwarding     *string       `yaml:"forwarding"`
	MinHealthy     *int64        `yaml:"min_healthy"`
	Health         *rawCheck     `yaml:"health"`
	Advertise      *rawAdvertise `yaml:"advertise"`
	Backends       []*rawBackend `yaml:"backends"`
}

type rawCheck struct {
	Type          *string   `yaml:"type"`
	Interval      *string   `yaml:"interval"`
	Timeout       *string   `yaml:"timeout"`
	Rise          *int64    `yaml:"rise"`
	Fall          *int64    `yaml:"fall"`
	Port          *int64    `yaml:"port"`
	Source        *string   `yaml:"source"`
	Method        *string   `yaml:"method"`
	Path          *string   `yaml:"path"`
	Host          *string   `yaml:"host"`
	ExpectStatus  []*int64  `yaml:"expect_status"`
	ExpectBody    *string   `yaml:"expect_body"`
	TLSServerName *string   `yaml:"tls_server_name"`
	TLSVerify     *bool     `yaml:"tls_verify"`
	Payload       *string   `yaml:"payload"`
	Expect        *string   `yaml:"expect"`
	Query         *string   `yaml:"query"`
	QueryType     *string   `yaml:"query_type"`
	RCode         *string   `yaml:"rcode"`
	Command       []*string `yaml:"command"`
	// ForwardingCheck is validated with the service (validate_service.go):
	// it depends on the forwarding method, protocol and VIP.
	ForwardingCheck *bool `yaml:"forwarding_check"`
}

type rawAdvertise struct {
	Communities      []*string `yaml:"communities"`
	LargeCommunities []*string `yaml:"large_communities"`
	MED              *int64    `yaml:"med"`
	ShutdownMED      *int64    `yaml:"shutdown_med"`
	ASPathPrepend    *int64    `yaml:"as_path_prepend"`
}

type rawBackend struct {
	Address *string `yaml:"address"`
	Port    *int64  `yaml:"port"`
	Weight  *int64  `yaml:"weight"`
}
