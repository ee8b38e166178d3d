package polite

import (
	"net/http"
	"testing"
)

func TestDefaultRoute(t *testing.T) {
	tests := []struct{ method, path, want string }{
		{"GET", "/v2/users/123", "GET /v2/users/:id"},
		{"GET", "/v2/users/123/repos", "GET /v2/users/:id/repos"},
		{"DELETE", "/items/550e8400-e29b-41d4-a716-446655440000", "DELETE /items/:id"},
		{"GET", "/commits/0123456789abcdef0123", "GET /commits/:id"},
		{"GET", "/v2/search", "GET /v2/search"},
		{"GET", "/v2/cafe", "GET /v2/cafe"},            // short hex is a name
		{"GET", "/v2/deadbeefdeadbeef", "GET /v2/:id"}, // 16 hex characters is an id
		{"GET", "", "GET "},
		{"GET", "/", "GET /"},
		{"POST", "/a//b/", "POST /a//b/"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, "http://api.test"+tt.path, nil)
		if got := DefaultRoute(req); got != tt.want {
			t.Errorf("DefaultRoute(%s %q) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}
