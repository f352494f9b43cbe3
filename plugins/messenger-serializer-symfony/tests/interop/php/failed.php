<?php

/*
 * Symfony's own failed-message commands on the configured failure transport, and a listing as
 * JSON lines for the tests to check.
 *
 *   php failed.php CONFIG.json messenger:failed:show [ID] [--max=N] [-vv]
 *   php failed.php CONFIG.json messenger:failed:retry ID... --force -n
 *   php failed.php CONFIG.json messenger:failed:remove ID... --force -n
 *   php failed.php CONFIG.json interop:failed:list   (one JSON object per message, via all())
 */

declare(strict_types=1);

require __DIR__.'/bootstrap.php';

use App\Interop\StderrLogger;
use Symfony\Component\Console\Application;
use Symfony\Component\Console\Command\Command;
use Symfony\Component\Console\Input\ArgvInput;
use Symfony\Component\Console\Input\InputInterface;
use Symfony\Component\Console\Output\OutputInterface;
use Symfony\Component\DependencyInjection\ServiceLocator;
use Symfony\Component\EventDispatcher\EventDispatcher;
use Symfony\Component\Messenger\Command\FailedMessagesRemoveCommand;
use Symfony\Component\Messenger\Command\FailedMessagesRetryCommand;
use Symfony\Component\Messenger\Command\FailedMessagesShowCommand;

$config = interop_config($argv);
$logger = new StderrLogger();
$dispatcher = new EventDispatcher();
$transports = interop_transports($config, interop_serializer());
interop_listeners($config, $transports, $dispatcher, $logger);
$bus = interop_bus($config, $transports, $dispatcher, interop_handler($config));

$failureName = $config['failure_transport'];
$failureTransports = new ServiceLocator([$failureName => static fn () => $transports[$failureName]]);

$application = new Application('interop', '5.4');
$application->setAutoExit(false);
$application->add(new FailedMessagesShowCommand($failureName, $failureTransports));
$application->add(new FailedMessagesRetryCommand($failureName, $failureTransports, $bus, $dispatcher, $logger));
$application->add(new FailedMessagesRemoveCommand($failureName, $failureTransports));
$application->add(new class($transports[$failureName]) extends Command {
    protected static $defaultName = 'interop:failed:list';
    private $receiver;

    public function __construct($receiver)
    {
        $this->receiver = $receiver;
        parent::__construct();
    }

    protected function execute(InputInterface $input, OutputInterface $output): int
    {
        foreach ($this->receiver->all() as $envelope) {
            $output->writeln(json_encode(interop_describe($envelope), \JSON_UNESCAPED_SLASHES));
        }

        return 0;
    }
});

exit($application->run(new ArgvInput(array_merge([$argv[0]], \array_slice($argv, 2)))));
