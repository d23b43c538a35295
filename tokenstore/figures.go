package tokenstore

// Figure is one of a store's own running figures, for the daemon's
// metrics: its commits, round trips, pool. The daemon exports it as
// handoff_store_<Name>.
type Figure struct {
	// Name is the series name after "handoff_store_"; a Counter's ends
	// in _total.
	Name string
	Help string
	// Counter marks a running total; otherwise the figure is a gauge.
	Counter bool
	Value   float64
}

// FigureReporter is an optional capability of a Store: figures about its
// own work that the token core's steps do not show, such as how many
// steps share a commit. Figures must be cheap to read (atomic counters):
// every scrape of /metrics reads them.
type FigureReporter interface {
	Figures() []Figure
}
