package control

// MaxWatchers exposes maxWatchers to the tests of package control_test.
const MaxWatchers = maxWatchers
