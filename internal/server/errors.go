package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/linkwall/linkwall/internal/chat"
)

// WebSocket close codes linkwall uses besides the standard ones
// (1000 normal, 1001 going away, 1009 too big, 1011 internal error).
const (
	// CloseSlowConsumer: the connection's send queue passed its bound. The
	// client should reconnect and resume from its last seq per room.
	CloseSlowConsumer = 4008
	// CloseRateLimited: the client kept sending past the rate limit.
	CloseRateLimited = 4029
	// CloseUnauthorized: no valid session: the session ended (logged out)
	// while connected, or the auth frame was missing, late or wrong.
	CloseUnauthorized = 4001
	// CloseIdle: nothing (not even a pong) arrived within the read
	// deadline; the peer is most likely gone.
	CloseIdle = 4000
	// CloseTooManyConnections: the user already has MaxConnsPerUser
	// connections on this node. The client may retry later, once one of
	// the others has closed.
	CloseTooManyConnections = 4009
)

// httpStatus maps a chat error code to its HTTP status. This table and
// closeCode are the only places that translate codes for transports.
func httpStatus(code string) int {
	switch code {
	case chat.EInvalid:
		return http.StatusBadRequest
	case chat.EUnauthorized:
		return http.StatusUnauthorized
	case chat.EForbidden:
		return http.StatusForbidden
	case chat.ENotFound:
		return http.StatusNotFound
	case chat.EConflict:
		return http.StatusConflict
	case chat.ETooLarge:
		return http.StatusRequestEntityTooLarge
	case chat.ERateLimited:
		return http.StatusTooManyRequests
	case chat.EUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// closeCode maps a chat error code to the WebSocket close code used when
// that error ends a connection.
func closeCode(code string) int {
	switch code {
	case chat.EUnauthorized:
		return CloseUnauthorized
	case chat.ETooLarge:
		return websocket.CloseMessageTooBig
	case chat.ERateLimited:
		return CloseRateLimited
	case chat.EUnavailable:
		return websocket.CloseTryAgainLater
	case chat.EInvalid, chat.EForbidden, chat.ENotFound, chat.EConflict:
		return websocket.ClosePolicyViolation
	default:
		return websocket.CloseInternalServerErr
	}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError answers r with err as {"error":{"code","message"}}. Internal
// errors are logged with their details and shown as a generic message.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := chat.ErrorCode(err)
	if code == chat.EInternal || code == chat.EUnavailable {
		s.log.Error("request failed", zap.String("method", r.Method),
			zap.String("path", r.URL.Path), zap.Error(err))
	}
	writeJSON(w, httpStatus(code), errorBody{errorDetail{code, chat.ErrorMessage(err)}})
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
}

// isChatError reports whether err carries a client-visible code.
func isChatError(err error) bool {
	var e *chat.Error
	return errors.As(err, &e)
}
