package oauthlogin

import "testing"

func TestBrowsable(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://auth.example.com/authorize?client_id=x", true},
		{"http://127.0.0.1:8080/authorize", true},
		{"http://[::1]:8080/authorize", true},
		{"http://localhost/authorize", true},
		{"http://auth.example.com/authorize", false},
		{"file:///etc/passwd", false},
		{"smb://host/share", false},
		{"javascript:alert(1)", false},
		{"https:///nohost", false},
		{"vscode://extension/x", false},
	} {
		if err := browsable(tt.url); (err == nil) != tt.ok {
			t.Errorf("browsable(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}
