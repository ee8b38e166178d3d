package redisquota_test

import (
	"net/http"

	"github.com/politehttp/polite"
	"github.com/politehttp/polite/redisquota"
	"github.com/redis/go-redis/v9"
)

// A fleet shares one quota: each process's throttle keeps its state in the same Redis.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	th := polite.NewThrottle(polite.ThrottleStore(redisquota.New(rdb, redisquota.WithPrefix("myapp:polite:"))))
	client := &http.Client{Transport: polite.New(nil, polite.WithThrottle(th))}
	_ = client // client.Get(...) now spends the fleet's quota
}
