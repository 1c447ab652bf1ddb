package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// decodeBody reads a JSON body of at most maxBodyBytes into v.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return chat.Errorf(chat.EInvalid, "reading the body: %v", err)
	}
	if len(data) > maxBodyBytes {
		return chat.Errorf(chat.ETooLarge, "body is larger than %d bytes", maxBodyBytes)
	}
	if !utf8.Valid(data) {
		return chat.Errorf(chat.EInvalid, "body is not valid UTF-8")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return chat.Errorf(chat.EInvalid, "malformed JSON body: %v", err)
	}
	return nil
}

// decodeOptionalBody is decodeBody for a request whose body may be absent
// or empty (only white space), which leaves v as it is.
func decodeOptionalBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return chat.Errorf(chat.EInvalid, "reading the body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	return decodeBody(r, v)
}

type userResponse struct {
	User chat.User `json:"user"`
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, u chat.User) {
	writeJSON(w, http.StatusOK, userResponse{u})
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, _ chat.User) {
	users, err := s.store.Users(r.Context(), maxUsersListed+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]chat.User, 0, len(users))
	for _, u := range users {
		if u.ID != chat.LinkBotID && len(out) < maxUsersListed {
			out = append(out, u)
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Users []chat.User `json:"users"`
	}{out})
}

type roomResponse struct {
	Room chat.Room `json:"room"`
}

func (s *Server) listRooms(w http.ResponseWriter, r *http.Request, u chat.User) {
	rooms, err := s.store.Rooms(r.Context(), u.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rooms == nil {
		rooms = []chat.Room{}
	}
	writeJSON(w, http.StatusOK, struct {
		Rooms []chat.Room `json:"rooms"`
	}{rooms})
}

type createRoomRequest struct {
	Kind    string   `json:"kind"`
	Name    string   `json:"name"`
	Members []string `json:"members"`
	Lang    string   `json:"lang"`
}

func (s *Server) createRoom(w http.ResponseWriter, r *http.Request, u chat.User) {
	var req createRoomRequest
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	// The room quota is read, then the room stored: two creations that
	// both passed the check would put someone past it. One at a time on
	// this node (a creation is one small commit).
	s.createMu.Lock()
	room, err := s.newRoom(r, u, req)
	var stored chat.Room
	if err == nil {
		stored, err = s.store.CreateRoom(r.Context(), room)
	}
	s.createMu.Unlock()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.rooms.put(stored)
	status := http.StatusOK // the pair's existing direct room
	if stored.ID == room.ID {
		status = http.StatusCreated
		s.publishRoom(r.Context(), &stored)
	}
	writeJSON(w, status, roomResponse{stored})
}

// newRoom validates a creation request into the room to store.
func (s *Server) newRoom(r *http.Request, u chat.User, req createRoomRequest) (chat.Room, error) {
	lang := req.Lang
	if lang == "" {
		lang = "en"
	}
	if err := checkLang(lang); err != nil {
		return chat.Room{}, err
	}
	room := chat.Room{
		ID: uuid.NewString(), Kind: req.Kind, Era: s.defaultEra(), Lang: lang,
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	for _, m := range req.Members {
		if _, err := uuid.Parse(m); err != nil || m == chat.LinkBotID {
			return chat.Room{}, chat.Errorf(chat.ENotFound, "no such user: %.64q", m)
		}
	}
	switch req.Kind {
	case chat.Direct:
		if len(req.Members) != 1 {
			return chat.Room{}, chat.Errorf(chat.EInvalid, "a direct room has exactly one other member")
		}
		if req.Members[0] == u.ID {
			return chat.Room{}, chat.Errorf(chat.EInvalid, "a direct room needs another user")
		}
		room.Members = []string{u.ID, req.Members[0]}
		counts, err := s.roomQuota(r, u, room.Members)
		if chat.ErrorCode(err) == chat.ETooLarge && s.directExists(r.Context(), counts, u.ID, req.Members[0]) {
			err = nil // CreateRoom returns the pair's room: nobody joins anything
		}
		return room, err
	case chat.Group:
		name, err := checkName("name", req.Name, s.limits.MaxNameRunes)
		if err != nil {
			return chat.Room{}, err
		}
		room.Name = name
		members := []string{u.ID}
		for _, m := range req.Members {
			if !slices.Contains(members, m) {
				members = append(members, m)
			}
		}
		if len(members) > s.limits.MaxGroupMembers {
			return chat.Room{}, chat.Errorf(chat.ETooLarge, "a group has at most %d members", s.limits.MaxGroupMembers)
		}
		room.Members = members
		_, err = s.roomQuota(r, u, room.Members)
		return room, err
	default:
		return chat.Room{}, chat.Errorf(chat.EInvalid, `kind must be "direct" or "group"`)
	}
}

// roomQuota bounds the rooms any one user is in: the creator and
// everyone added. Without the bound on the added, anyone could put a user
// in so many groups that their hello frame (every room with its members)
// grew without limit. It returns the members' room counts it read.
func (s *Server) roomQuota(r *http.Request, u chat.User, members []string) (map[string]int, error) {
	counts, err := s.store.RoomCounts(r.Context(), members)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if counts[m] < s.limits.MaxRoomsPerUser {
			continue
		}
		if m == u.ID {
			return counts, chat.Errorf(chat.ETooLarge, "you are in %d rooms, the limit", s.limits.MaxRoomsPerUser)
		}
		return counts, chat.Errorf(chat.ETooLarge, "user %s is in %d rooms, the limit", m, s.limits.MaxRoomsPerUser)
	}
	return counts, nil
}

// directExists reports whether userID already has a direct room with
// other. Only asked when the quota refuses; it lists the rooms of
// whichever of the two is in fewer (counts, from roomQuota).
func (s *Server) directExists(ctx context.Context, counts map[string]int, userID, other string) bool {
	if counts[other] < counts[userID] {
		userID, other = other, userID
	}
	rooms, err := s.store.Rooms(ctx, userID)
	if err != nil {
		return false // the quota's refusal stands
	}
	for _, r := range rooms {
		if r.Kind == chat.Direct && slices.Contains(r.Members, other) {
			return true
		}
	}
	return false
}

func checkLang(lang string) error {
	if lang != "en" && lang != "zh" {
		return chat.Errorf(chat.EInvalid, `lang must be "en" or "zh"`)
	}
	return nil
}

func (s *Server) getRoom(w http.ResponseWriter, r *http.Request, u chat.User) {
	room, err := s.memberRoom(r.Context(), u.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, roomResponse{room})
}

func (s *Server) listMessages(w http.ResponseWriter, r *http.Request, u chat.User) {
	q := r.URL.Query()
	after, limit := int64(0), defaultPageSize
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, chat.Errorf(chat.EInvalid, "after must be a seq ≥ 0"))
			return
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			s.writeError(w, r, chat.Errorf(chat.EInvalid, "limit must be 1…%d", maxPageSize))
			return
		}
		limit = n
	}
	msgs, err := s.history(r.Context(), u.ID, r.PathValue("id"), after, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if msgs == nil {
		msgs = []chat.Message{}
	}
	writeJSON(w, http.StatusOK, struct {
		Messages []chat.Message `json:"messages"`
	}{msgs})
}

func (s *Server) putEra(w http.ResponseWriter, r *http.Request, u chat.User) {
	var req struct {
		Era string `json:"era"`
	}
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	room, err := s.memberRoom(r.Context(), u.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Era == "" {
		s.writeError(w, r, chat.Errorf(chat.EInvalid, "era is required"))
		return
	}
	room, err = s.setEra(r.Context(), u, room, req.Era)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, roomResponse{room})
}

func (s *Server) putLang(w http.ResponseWriter, r *http.Request, u chat.User) {
	var req struct {
		Lang string `json:"lang"`
	}
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	room, err := s.memberRoom(r.Context(), u.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := checkLang(req.Lang); err != nil {
		s.writeError(w, r, err)
		return
	}
	room, err = s.store.SetRoomLang(r.Context(), room.ID, req.Lang)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.rooms.put(room)
	s.publishRoom(r.Context(), &room)
	writeJSON(w, http.StatusOK, roomResponse{room})
}

func (s *Server) getStats(w http.ResponseWriter, r *http.Request, u chat.User) {
	room, err := s.memberRoom(r.Context(), u.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.roomStats(r.Context(), &room)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) postWalkthrough(w http.ResponseWriter, r *http.Request, u chat.User) {
	room, err := s.memberRoom(r.Context(), u.ID, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req struct {
		StepSeconds *int64 `json:"step_seconds"` // a JSON integer: "10", 1e1 and 1.5 are refused
	}
	if err := decodeOptionalBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	var step time.Duration
	if req.StepSeconds != nil {
		if step, err = walkthroughStep(*req.StepSeconds); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if err := s.startWalkthrough(room, step); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, struct {
		Room string `json:"room"`
	}{room.ID})
}

type previewRequest struct {
	Text string `json:"text"`
	Chat string `json:"chat"`
	Era  string `json:"era"`
}

// previewRequest reads a preview request within the per-IP limit; false:
// the request has been answered with an error.
func (s *Server) previewRequest(w http.ResponseWriter, r *http.Request) (previewRequest, bool) {
	var req previewRequest
	if !s.previewLimits.get(s.clientIP(r)).Allow() {
		s.metrics.rateLimited.Inc()
		s.writeError(w, r, chat.Errorf(chat.ERateLimited, "more than %g previews per second from your address; slow down", float64(previewRate)))
		return req, false
	}
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return req, false
	}
	if err := checkText(req.Text, s.limits.MaxTextRunes); err != nil {
		s.writeError(w, r, err)
		return req, false
	}
	return req, true
}

func (s *Server) preview(w http.ResponseWriter, r *http.Request) {
	req, ok := s.previewRequest(w, r)
	if !ok {
		return
	}
	kind := bot.Chat(req.Chat)
	switch kind {
	case "":
		kind = bot.Group
	case bot.Direct, bot.Group:
	default:
		s.writeError(w, r, chat.Errorf(chat.EInvalid, `chat must be "direct" or "group"`))
		return
	}
	p := s.bot.Policy()
	eraID := p.DefaultEra()
	if req.Era != "" {
		era, err := p.ResolveEra(req.Era)
		if err != nil {
			s.writeError(w, r, chat.Errorf(chat.ENotFound, "%v", err))
			return
		}
		eraID = era.ID
	}
	res := s.bot.Decide(r.Context(), req.Text, kind, eraID)
	if res.Links == nil {
		res.Links = []bot.Link{}
	}
	writeJSON(w, http.StatusOK, res)
}

// previewAll decides a text in every era, for a one-to-one chat and a
// group: the page's Preview grid in one request.
func (s *Server) previewAll(w http.ResponseWriter, r *http.Request) {
	req, ok := s.previewRequest(w, r)
	if !ok {
		return
	}
	var results []bot.Result
	for _, era := range s.bot.Policy().Eras() {
		for _, kind := range []bot.Chat{bot.Direct, bot.Group} {
			results = append(results, s.bot.Decide(r.Context(), req.Text, kind, era.ID)) // Links never nil
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Results []bot.Result `json:"results"`
	}{results})
}

func (s *Server) eras(w http.ResponseWriter, r *http.Request) {
	p := s.bot.Policy()
	eras := p.Eras()
	if eras == nil {
		eras = []bot.Era{}
	}
	writeJSON(w, http.StatusOK, struct {
		Default string    `json:"default"`
		Eras    []bot.Era `json:"eras"`
	}{p.DefaultEra(), eras})
}

func (s *Server) platforms(w http.ResponseWriter, r *http.Request) {
	ps := s.bot.Policy().Platforms()
	if ps == nil {
		ps = []bot.Platform{}
	}
	writeJSON(w, http.StatusOK, struct {
		Platforms []bot.Platform `json:"platforms"`
	}{ps})
}
