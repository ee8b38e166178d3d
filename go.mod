module github.com/politehttp/polite

go 1.26.0

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/google/go-cmp v0.7.0
	go.uber.org/goleak v1.3.0
	golang.org/x/time v0.16.0
)

require golang.org/x/oauth2 v0.38.0

require (
	golang.org/x/net v0.63.0
	golang.org/x/text v0.44.0 // indirect
)
