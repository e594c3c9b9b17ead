package oauthlogin

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"runtime"
)

// OpenBrowser opens url in the user's browser: open on macOS, the URL
// handler on Windows, xdg-open elsewhere. It returns once the opener has
// started; an error means the user must open the printed URL. Only an
// https URL, or http to a loopback address, is opened: the URL comes from
// the server's metadata, and the system's opener would launch whatever
// handler another scheme names.
func OpenBrowser(url string) error {
	if err := browsable(url); err != nil {
		return err
	}
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		if _, err := exec.LookPath("xdg-open"); err != nil {
			return errors.New("no xdg-open on the PATH")
		}
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// browsable reports why rawURL must not be handed to the system's opener.
func browsable(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && u.Hostname() == "localhost":
		return nil
	case u.Scheme == "http":
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("not opening %q: only https URLs (or http to this machine) are opened", rawURL)
}
