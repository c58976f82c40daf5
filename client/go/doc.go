// Package client is the Go client of Berth's REST API (docs/api.md, v1alpha1).
//
// The core calls, [Client.Ping], [Client.Acquire], [Client.Renew] and
// [Client.Release], keep the shape of the pkg/client package of Berth's
// original Go implementation, so existing holders compile unchanged. (One
// difference: a 409 is an [*APIError] that matches [ErrConflict] under
// [errors.Is], not the sentinel itself; compare with errors.Is, not ==.)
//
//	c := client.New("https://berth.example.com:8443",
//		client.WithAPIKey("my-api-key"),
//		client.WithTLSConfig(tlsCfg),
//	)
//	if err := c.Ping(ctx); err != nil {
//		log.Fatal(err)
//	}
//
// The extensions read leases ([Client.Get], [Client.List], [Client.ListAll]),
// follow one lease as Server-Sent Events ([Client.Watch]), and block until a
// lease is granted ([Client.AcquireWait]).
//
// # Errors
//
// A non-success answer from the apiserver is an [*APIError] carrying the
// status code, the server's message and the request id. It matches the
// sentinel of its status code under [errors.Is]: [ErrBadRequest],
// [ErrUnauthorized], [ErrForbidden], [ErrNotFound] and [ErrConflict].
//
// # Keeping a lease
//
// A [Keeper] acquires a lease and renews it in the background. It never
// claims to hold the lease past a local deadline that runs from the moment
// the last successful request was sent (sent + TTL − margin), so a holder
// that stops hearing from the apiserver stops on time even though the
// apiserver cannot tell it so. See [Client.Keep].
package client
