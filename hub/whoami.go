package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// WhoAmI is the answer of GET /api/whoami-v2.
type WhoAmI struct {
	Type     string `json:"type"` // user | org | app
	ID       string `json:"id"`
	Name     string `json:"name"`
	Fullname string `json:"fullname"`
	Email    string `json:"email"`
	Orgs     []Org  `json:"orgs"`
	Auth     struct {
		Type        string `json:"type"` // access_token | app_token | app_token_as_user
		AccessToken *struct {
			DisplayName string `json:"displayName"`
			Role        string `json:"role"` // admin | write | contributor | read
		} `json:"accessToken"`
	} `json:"auth"`
}

// Org is an organisation the user belongs to.
type Org struct {
	Name     string `json:"name"`
	Fullname string `json:"fullname"`
}

// Role returns the token's role ("" when the Hub did not say).
func (w *WhoAmI) Role() string {
	if w.Auth.AccessToken == nil {
		return ""
	}
	return w.Auth.AccessToken.Role
}

// WhoAmI returns the identity behind the client's token. Without a token it fails with ErrUnauthorized
// without asking the Hub.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	if c.token == "" {
		return nil, fmt.Errorf("whoami: no token: %w", ErrUnauthorized)
	}
	r, err := c.send(ctx, call{method: "GET", url: c.apiURL("/api/whoami-v2"), auth: true})
	if err != nil {
		if errors.Is(err, ErrUnauthorized) {
			return nil, fmt.Errorf("whoami: the token was rejected: %w", err)
		}
		return nil, fmt.Errorf("whoami: %w", err)
	}
	var w WhoAmI
	if err := json.Unmarshal(r.body, &w); err != nil {
		return nil, fmt.Errorf("whoami: decoding the answer: %w", err)
	}
	if w.Name == "" {
		return nil, errors.New("whoami: the answer has no name")
	}
	return &w, nil
}
